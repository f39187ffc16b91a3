# cell: evaluate_accuracy
# item: 1
# fair: 0
# reason: mixed devices
def evaluate_accuracy(net, data_iter, device):
    was_training = net.training
    net.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for X, y in data_iter:
            X = X.to(device)  # y stays on the CPU: comparing it with the predictions fails on a GPU
            correct += (net(X).argmax(dim=1) == y).sum().item()
            total += y.numel()
    net.train(was_training)
    return correct / total
