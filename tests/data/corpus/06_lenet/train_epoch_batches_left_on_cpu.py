# cell: train_epoch
# item: 1
# fair: 0
# reason: fed the net a batch on cpu
def train_epoch(net, train_iter, loss, optimizer, device):
    # never moves the batches to `device`: the same numbers on a CPU, an error on a GPU
    net.train()
    loss_sum, correct, total = 0.0, 0, 0
    for X, y in train_iter:
        y_hat = net(X)
        l = loss(y_hat, y)
        optimizer.zero_grad()
        l.backward()
        optimizer.step()
        loss_sum += l.item() * y.numel()
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        total += y.numel()
    return loss_sum / total, correct / total
